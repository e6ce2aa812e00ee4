"""`[container].pids_limit`: the user's config only (the workspace's is the agent's to write)."""

from __future__ import annotations

import pytest

from cai import config, userfiles
from cai.errors import CaiError


def write_user_config(text: str) -> None:
    path = userfiles.user_config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_default_is_4096_and_the_users_config_sets_it(isolated_home):
    assert config.Layers(None).pids_limit() == 4096
    write_user_config("[container]\npids_limit = 300\n")
    assert config.Layers(None).pids_limit() == 300


@pytest.mark.parametrize("value", ["0", "-1", "true", '"4096"', "1.5"])
def test_a_value_that_is_not_a_positive_count_is_an_error(isolated_home, value):
    write_user_config(f"[container]\npids_limit = {value}\n")
    with pytest.raises(CaiError) as raised:
        config.Layers(None).pids_limit()
    assert raised.value.code == 1 and "[container].pids_limit" in raised.value.message
