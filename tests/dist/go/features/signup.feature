Feature: signup
  Every scenario registers the same email: it passes only when each has a schema of its own.

  Scenario Outline: <who> registers
    When "alice@example.com" registers
    Then there is 1 user

    Examples:
      | who   |
      | one   |
      | two   |
      | three |
      | four  |
