"""The graph IR: values and primitive calls, flattening logical models into it, and its passes."""
