Feature: Sessions
  A token belongs to the user who logged in, and rotating the secret ends every session.
  Each scenario registers its own user and rotates the shared secret: without isolation the
  user counts and the secret versions would depend on which scenarios ran before.

  Scenario Outline: a user who logs in is who the token says
    Given a user "<email>" has registered with password "<password>"
    When "<email>" logs in with password "<password>"
    And "<email>" asks who they are
    Then the response status is 200
    And the response says the user is "<email>"
    And there is 1 user

    Examples:
      | email | password |
      | alice@example.com | pw-alice |
      | bob@example.com | pw-bob |
      | carol@example.com | pw-carol |
      | dave@example.com | pw-dave |
      | erin@example.com | pw-erin |
      | frank@example.com | pw-frank |
      | grace@example.com | pw-grace |
      | heidi@example.com | pw-heidi |
      | ivan@example.com | pw-ivan |
      | judy@example.com | pw-judy |
      | mallory@example.com | pw-mallory |
      | niaj@example.com | pw-niaj |
      | olivia@example.com | pw-olivia |
      | peggy@example.com | pw-peggy |
      | rupert@example.com | pw-rupert |
      | sybil@example.com | pw-sybil |

  Scenario Outline: a rotation ends the session
    Given a user "<email>" has registered with password "pw"
    And "<email>" logs in with password "pw"
    When the JWT secret is rotated <n> times
    And "<email>" asks who they are
    Then the response status is 401
    And the active secret version is <version>

    Examples:
      | email | n | version |
      | ivan@example.com | 1 | 2 |
      | judy@example.com | 2 | 3 |
      | mallory@example.com | 3 | 4 |
      | niaj@example.com | 4 | 5 |
      | olivia@example.com | 5 | 6 |
      | peggy@example.com | 6 | 7 |
      | rupert@example.com | 7 | 8 |
      | sybil@example.com | 8 | 9 |
