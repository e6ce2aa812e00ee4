"""Paths inside the agent image that the engine, ssh and volume layers agree on."""

AGENT_WORKSPACE = "/home/agent/workspace"  # where the image mounts the workspace
