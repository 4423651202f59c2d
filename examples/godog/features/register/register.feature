Feature: Registration
  Every scenario registers the same email in its Background: without isolation the second
  scenario to run would get 409 Conflict.

  Background:
    Given a user "alice@example.com" has registered with password "secret1"

  Scenario: registering the same email twice is refused
    When "alice@example.com" registers with password "other"
    Then the response status is 409

  Scenario: a second user can register
    When "bob@example.com" registers with password "secret2"
    Then the response status is 201
    And the new user's id is 2
    And there are 2 users

  Scenario: the first user gets id 1 in every scenario
    Then there is 1 user

  Scenario Outline: malformed registrations are rejected
    When "<email>" registers with password "<password>"
    Then the response status is 400

    Examples:
      | email             | password |
      | no-at-sign        | x        |
      | carol@example.com |          |
      |                   | x        |
      | carol example.com | x        |
      | carol.example.com | pw       |
      | bob               | secret2  |
      |                   |          |
      | no-at-sign        |          |
      | dave@example.com  |          |

  Scenario: registration survives a rotated secret
    When the JWT secret is rotated
    And "dave@example.com" registers with password "pw"
    Then the response status is 201
    And there are 2 users
