Feature: Login

  Background:
    Given a user "alice@example.com" has registered with password "secret1"

  Scenario: the right password gives a token
    When "alice@example.com" logs in with password "secret1"
    Then the response status is 200

  Scenario: the wrong password is refused
    When "alice@example.com" logs in with password "wrong"
    Then the response status is 401

  Scenario: an unknown user is refused
    When "nobody@example.com" logs in with password "secret1"
    Then the response status is 401

  Scenario: a token says who you are
    When "alice@example.com" logs in with password "secret1"
    And "alice@example.com" asks who they are
    Then the response status is 200
    And the response says the user is "alice@example.com"

  Scenario: no token, no identity
    When someone without a token asks who they are
    Then the response status is 401

  Scenario Outline: login attempts
    When "<email>" logs in with password "<password>"
    Then the response status is <status>

    Examples:
      | email             | password | status |
      | alice@example.com | secret1  | 200    |
      | alice@example.com | SECRET1  | 401    |
      | ALICE@example.com | secret1  | 401    |
      | alice@example.com | secret   | 401    |
      | alice@example.com | secret11 | 401    |
      | alice@example.co  | secret1  | 401    |
      | bob@example.com   | secret1  | 401    |
      | alice@example.com |          | 401    |
      | alice@example.com | secret1  | 200    |
