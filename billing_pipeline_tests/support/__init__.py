"""What several test modules share and that is not a fixture: sample documents and catalogs, fake
servers, PostgreSQL settings. Fixtures live in conftest.py; a test module imports from here, never
from another test module (test_house.py checks it)."""
