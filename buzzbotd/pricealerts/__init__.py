"""Price alerts (/alert): a user's levels and % moves, found crossed by one indexed
query per currency when the price changes, each crossing recorded before its
message is sent.

- request.py: what /alert's words ask for;
- store.py: a user's alerts: add (at most MAX_PER_OWNER), list, remove;
- crossing.py: the evaluation on a new price, and the messages it leaves to send.
"""
