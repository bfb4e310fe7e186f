"""Call signaling: invites, answers, ring timeouts, busy and glare, LiveKit tokens."""
