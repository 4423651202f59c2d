Feature: JWT secret rotation
  Rotation changes rows in jwt_secrets: without isolation, versions would depend on which
  scenarios ran before.

  Background:
    Given a user "alice@example.com" has registered with password "secret1"
    And "alice@example.com" logs in with password "secret1"

  Scenario: the seeded secret is version 1
    Then the active secret version is 1

  Scenario: rotating makes version 2
    When the JWT secret is rotated
    Then the active secret version is 2

  Scenario: a token from before the rotation is rejected
    When the JWT secret is rotated
    And "alice@example.com" asks who they are
    Then the response status is 401

  Scenario: a token from after the rotation works
    When the JWT secret is rotated
    And "alice@example.com" logs in with password "secret1"
    And "alice@example.com" asks who they are
    Then the response status is 200

  Scenario Outline: rotating several times
    When the JWT secret is rotated <n> times
    Then the active secret version is <version>

    Examples:
      | n | version |
      | 1 | 2       |
      | 2 | 3       |
      | 3 | 4       |
      | 4 | 5       |
      | 5 | 6       |
      | 6 | 7       |
      | 7 | 8       |
