"""Where a reader's links point: signed personal links, example links, or (pre-rendering) slots."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from ..tokens import EXAMPLE_TOKEN, Purpose, TokenOwner, link_at, make_token


class Links(ABC):
    """The links of one message; each kind says how a link of a purpose is made."""

    @abstractmethod
    def url(self, purpose: Purpose, film_id: int | None = None) -> str:
        """The link of this purpose (and film, for early access)."""

    def unsubscribe(self) -> str:
        """The unsubscribe link."""
        return self.url(Purpose.UNSUBSCRIBE)

    def preferences(self) -> str:
        """The preferences link."""
        return self.url(Purpose.PREFERENCES)

    def early(self, film_id: int) -> str:
        """The early-access link to one film."""
        return self.url(Purpose.EARLY_ACCESS, film_id)


@dataclass(frozen=True)
class PersonalLinks(Links):
    """A subscriber's real, signed links."""

    subscriber: TokenOwner
    base_url: str

    def url(self, purpose: Purpose, film_id: int | None = None) -> str:
        """A signed link for this subscriber."""
        return link_at(self.base_url, purpose, make_token(purpose, self.subscriber, film_id))


@dataclass(frozen=True)
class ExampleLinks(Links):
    """Links that look real but work for nobody: previews and test sends (their unsubscribe
    link answers 200 and does nothing, so a test's one-click header is no dead end)."""

    base_url: str

    def url(self, purpose: Purpose, film_id: int | None = None) -> str:
        """An example link of this purpose."""
        return link_at(self.base_url, purpose, EXAMPLE_TOKEN)
