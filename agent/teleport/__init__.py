"""The Teleport side: the proxy's public settings, the bot identity and the cluster inventory."""
