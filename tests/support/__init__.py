"""Test support shared by every test tier: the scripted model server and its fixtures."""
