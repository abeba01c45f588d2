"""The name rules: the one place they live. Served to the JS by GET /sagemaker/rules.

Template names are case-sensitive (`Foo` and `foo` are two templates).
Environment names become SageMaker resource names, which ignore case, so
environments are unique case-insensitively.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import NameInvalid


@dataclass(frozen=True)
class NameRule:
    kind: str
    pattern: str  # without anchors: checked with re.fullmatch ($ alone accepts a trailing newline)
    max_length: int
    case_sensitive: bool

    def check(self, name: object) -> str:
        """Return `name` if it is valid, else raise NameInvalid saying why."""
        if not isinstance(name, str):
            raise NameInvalid(f"{self.kind} name must be a string")
        if name == "":
            raise NameInvalid(f"{self.kind} name is empty; {self.describe()}")
        if len(name) > self.max_length:
            raise NameInvalid(f"{self.kind} name has {len(name)} characters; {self.describe()}")
        if not re.fullmatch(self.pattern, name, flags=re.ASCII):
            raise NameInvalid(f"{self.kind} name {name!r} is not allowed; {self.describe()}")
        return name

    def describe(self) -> str:
        case = "case-sensitive" if self.case_sensitive else "case-insensitive"
        return f"use 1-{self.max_length} ASCII letters or digits ({case})"

    def as_json(self) -> dict:
        return {
            "pattern": f"^{self.pattern}$",
            "max_length": self.max_length,
            "case_sensitive": self.case_sensitive,
            "description": self.describe(),
        }


TEMPLATE_NAME = NameRule("template", "[A-Za-z0-9]{1,20}", 20, case_sensitive=True)
ENVIRONMENT_NAME = NameRule("environment", "[A-Za-z0-9]{1,20}", 20, case_sensitive=False)


def rules() -> dict:
    return {"template_name": TEMPLATE_NAME.as_json(), "environment_name": ENVIRONMENT_NAME.as_json()}
