"""Framework integrations: ``analytics_cio.contrib.django`` (a Django app), ``analytics_cio.contrib.flask`` (a
Flask extension), ``analytics_cio.contrib.celery`` (worker signals) and ``analytics_cio.contrib.rq`` (worker
classes). Each imports its framework only when it is used; the frameworks are optional extras."""
