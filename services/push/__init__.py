"""Push notifications through Expo for users with no device online."""
