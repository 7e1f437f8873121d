"""docs/logging.md's command lines run as written and print what the page shows.

Each runs as the real ``gatekeeper`` console script in a subprocess (so the
records on its stderr are the command's own, not the agent thread's of this
process), against a real Redis, while an agent holds the refunds the page
approves and denies. The page shows stderr (the log record) before stdout.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from gatekeeper import ApprovalDenied
from gatekeeper._config import starter_config
from tests.docskit import ROOT, Matcher, Shown
from tests.integration.test_docs_commands import Agent, page_env, replay, yaml_blocks  # noqa: F401

GATEKEEPER = str(Path(sys.executable).with_name("gatekeeper"))


def test_logging_page_commands(page_env: Path, redis_prefix: str) -> None:  # noqa: F811
    config_text = yaml_blocks("cli.md")[0].replace("prefix: gatekeeper", f"prefix: {redis_prefix}")
    (page_env / "gatekeeper.yaml").write_text(config_text)
    policy = yaml.safe_load(starter_config())["policy"]
    (page_env / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    agent = Agent(page_env / "gatekeeper.yaml")
    try:
        matcher = Matcher()
        matcher.ids["01m8gj619pgxqjtqkvh3aa08f0"] = agent.hold("A-2", 40.0)
        matcher.ids["01m8gj6j36ehnjpwtrkkp6z5pj"] = agent.hold("A-4", 30.0)

        def run(shown: Shown, argv: list[str]) -> str:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
            done = subprocess.run(
                [GATEKEEPER, *argv],
                capture_output=True,
                text=True,
                env=env,
                cwd=page_env,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            return done.stderr + done.stdout

        done = replay(ROOT / "docs" / "logging.md", matcher, run=run)
        assert [s.argv[2 if s.argv[0] == "--log-level" else 4] for s in done] == [
            "approve",
            "deny",
        ]
        assert agent.outcome("A-2") == "refunded 40.0 on A-2"
        assert isinstance(agent.outcome("A-4"), ApprovalDenied)
    finally:
        agent.gate.close()
