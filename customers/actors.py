"""Who did something: a staff user, the system (a sweep, a task) or the customer."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    kind: str  # "staff" | "system" | "customer"
    user_id: int | None = None
    label: str = ""

    @classmethod
    def staff(cls, user) -> "Actor":
        return cls(kind="staff", user_id=user.pk, label=user.get_username())

    @classmethod
    def system(cls, label: str = "system") -> "Actor":
        return cls(kind="system", label=label)

    @classmethod
    def customer(cls, label: str = "customer") -> "Actor":
        return cls(kind="customer", label=label)

    def __str__(self) -> str:
        return self.label or self.kind


SYSTEM = Actor.system()
