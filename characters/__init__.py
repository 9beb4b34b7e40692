"""Who the agents are: schema, Sims-style catalogue, scenes, cards, presets."""
