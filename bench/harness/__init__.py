"""Benchmark harness for corral: starts servers, drives wrk, writes the report."""
