"""BentoML's own client talks to the service: `bentoml.SyncHTTPClient` on /score and /badge.

The client waits for /readyz, sends its `token` as the bearer header and speaks JSON. Its typed
endpoint methods (`client.score(...)`) come from BentoML's /schema.json, which lists only
`@bentoml.api` routes; the service's routes are FastAPI's (serving/service.py), so the calls go
through the client's `request`, with the same connection, headers and token.
"""

from __future__ import annotations

import bentoml
import pytest

from .conftest import AS_OF, TOKENS, Server, World

pytestmark = pytest.mark.service


def test_sync_http_client_scores_and_looks_up(server: Server, world: World):
    person = str(world.batch["person_id"].iloc[0])
    expected = world.batch.set_index("person_id").loc[person]
    with bentoml.SyncHTTPClient(server.url, token=TOKENS[0], server_ready_timeout=60) as client:
        body = {
            "as_of": AS_OF.isoformat(),
            "persons": [{"person_id": person, "trips": world.trips_of(person)}],
        }
        scored = client.request("POST", "/score", json=body)
        assert scored.status_code == 200, scored.text
        (result,) = scored.json()["results"]
        assert result["commuter_probability"] == pytest.approx(
            expected["commuter_probability"], abs=1e-6
        )
        found = client.request("POST", "/badge", json={"person_ids": [person, "never-seen"]})
        assert found.status_code == 200, found.text
        hit, miss = found.json()["results"]
        assert hit["badge"] == bool(expected["badge"])
        assert miss == {"person_id": "never-seen", "found": False}


def test_sync_http_client_without_a_token_is_refused(server: Server):
    with bentoml.SyncHTTPClient(server.url, server_ready_timeout=60) as client:
        r = client.request("POST", "/badge", json={"person_ids": ["p1"]})
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "unauthorized"
