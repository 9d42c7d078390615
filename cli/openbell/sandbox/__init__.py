"""The sandbox: the trading platform as local processes on 127.0.0.1, supervised from one state directory.

`supervisor.up/down/status` are the entry points; `layout` says where everything lives; `components` says
how each part is started and probed.
"""
