"""Policies that use a world model: ``dreamer`` (DreamerV3's online loop: act, replay, learn the world
model, train an actor-critic in imagination) and the live envs they act in (``envs``)."""
