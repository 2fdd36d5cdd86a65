"""What both APIs' schemathesis suites share: the staff token as schemathesis' auth (registered
once, here), a tally of the statuses seen, and the check that the only 5xx are documented 503s."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import schemathesis

from tests.support.tokens import bearer

STAFF = {"Authorization": bearer()["authorization"]}  # every scope: the routes' answers are tested


@schemathesis.auth()
class StaffToken:
    """The APIs' auth for schemathesis, so its auth checks can also take the token away or forge
    one and see the API refuse it with 401."""

    def get(self, case: Any, ctx: Any) -> str:
        return STAFF["Authorization"]

    def set(self, case: Any, data: str, ctx: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": data}


class Tally:
    """(operation, status) -> requests, printed at the end of a suite: the counts a note reports."""

    def __init__(self, api: str) -> None:
        self.api = api
        self.seen: Counter[tuple[str, int]] = Counter()

    def count(self, case: Any, response: Any) -> None:
        self.seen[(f"{case.method} {case.path}", response.status_code)] += 1

    def report(self) -> None:
        statuses: Counter[int] = Counter()
        for (_, status), n in self.seen.items():
            statuses[status] += n
        total = sum(self.seen.values())
        print(f"\n{self.api} contract: {total} requests; statuses {dict(sorted(statuses.items()))}")
        for (operation, status), n in sorted(self.seen.items()):
            print(f"  {operation:45} {status}  x{n}")


def no_server_error(tally: Tally, documented_503: set[str]) -> Callable[[Any, Any, Any], bool | None]:
    """A schemathesis check: any 5xx fails, except a 503 whose `error` is documented, with Retry-After."""

    def check(ctx: Any, response: Any, case: Any) -> bool | None:
        tally.count(case, response)
        if response.status_code < 500:
            return None
        body = response.json() if response.status_code == 503 else {}
        if body.get("error") in documented_503 and "retry-after" in response.headers:
            return None
        raise AssertionError(
            f"{response.status_code} for {case.method} {case.formatted_path}: {response.text}"
        )

    check.__name__ = "no_server_error"
    return check
