"""One module per nightly test, named ``<id>_<name>.py``: its knobs, its spec (plan
figures, metric assets, named checks) and its scenario, side by side. Importing this
package imports none of them: ``suite.catalog`` lists them."""
