"""Untrusted parsing in a child process with a time limit and a memory cap, forked from a pre-imported
template so a restart costs milliseconds."""
