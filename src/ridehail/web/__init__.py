"""HTTP plumbing shared by every domain's routes. Imports no domain."""
