"""An example Django project whose views report to Customer.io through analytics_cio."""
