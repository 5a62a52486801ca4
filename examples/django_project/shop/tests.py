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


class GuestTests(SimpleTestCase):
    def test_a_guest_is_their_anonymous_id_never_the_person_none(self) -> None:
        with capture() as captured:
            self.client.post("/orders", {"order_id": "o-1", "total": 42}, content_type="application/json")
            self.client.post("/orders", {"order_id": "o-2", "total": 7}, content_type="application/json")
        first, second = captured.events("Order Completed")
        self.assertEqual(list(first["identifiers"]), ["anonymous_id"])
        self.assertEqual(second["identifiers"], first["identifiers"])  # one visitor: one id, kept in the session
        self.assertNotIn("None", captured.people)
        self.assertEqual(len(captured.people), 0)

    def test_signing_up_links_the_guests_earlier_orders(self) -> None:
        with capture() as captured:
            self.client.post("/orders", {"order_id": "o-1", "total": 42}, content_type="application/json")
            response = self.client.post("/signup", {"email": "ada@example.com"}, content_type="application/json")
        person = captured.person(response.json()["id"])
        assert person is not None
        self.assertEqual([event["name"] for event in person["events"]], ["Order Completed", "Signed Up"])
