"""Your jobs: one module each, found by the kit without any other edit.

A job is a unique name, a marshmallow schema for its payload and the
function that does the work, tied together by ``@job``::

    from marshmallow import Schema, fields

    from ..kit import job


    class WelcomeEmail(Schema):
        user_id = fields.Integer(required=True, strict=True)


    @job("sendWelcomeEmailJob", schema=WelcomeEmail, retries=3)
    def send_welcome_email(data: dict) -> dict: ...

Modules whose name starts with ``_`` are not imported. See ``docs/jobs.md``.
"""
