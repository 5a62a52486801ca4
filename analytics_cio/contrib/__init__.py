"""Framework integrations: ``analytics_cio.contrib.django`` (a Django app) and ``analytics_cio.contrib.flask``
(a Flask extension). Each imports its framework only when it is used; the frameworks are optional extras."""
