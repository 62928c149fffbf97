"""Thin HTTP routers: parse the request, call one service in a worker thread, answer JSON."""
