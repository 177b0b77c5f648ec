"""HTTP clients for the providers' usage and cost APIs (one retrying client, one module each)."""
