"""Forecasting: tail estimators, the three deployment risks, the fitted forecast, diagnostics and Best-of-N."""
