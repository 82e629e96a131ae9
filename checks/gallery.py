"""Placeholder until its checks land."""
