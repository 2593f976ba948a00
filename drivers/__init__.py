"""logpipe's built-in log drivers: one module per driver, plus the rotation they share.

Drivers import only the ``logpipe`` core and, lazily, their own client library. They are
registered through the ``logpipe.drivers`` entry-point group like any third-party driver.
"""
