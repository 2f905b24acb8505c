"""Meta's platforms (Facebook Pages, Instagram, Threads), sharing one Graph API client."""
