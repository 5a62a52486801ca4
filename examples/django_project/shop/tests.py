"""Tests of the example project: what the views send to Customer.io, captured instead of sent.

    python manage.py test
"""

from __future__ import annotations

from django.test import SimpleTestCase

from analytics_cio.testing import capture


class SignupTests(SimpleTestCase):
    def test_signup_identifies_the_person_and_records_the_event(self) -> None:
        with capture() as captured:
            response = self.client.post("/signup", {"email": "ada@example.com", "plan": "pro"},
                                        content_type="application/json")
        self.assertEqual(response.status_code, 201)
        self.assertEqual(captured.people["ada@example.com"]["plan"], "pro")
        [event] = captured.events("Signed Up")
        self.assertEqual(event["attributes"], {"plan": "pro"})

    def test_a_bad_signup_sends_nothing(self) -> None:
        with capture() as captured:
            response = self.client.post("/signup", {}, content_type="application/json")
        self.assertEqual(response.status_code, 400)
        self.assertEqual(captured.ops, [])
