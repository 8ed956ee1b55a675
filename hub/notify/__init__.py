"""Reminder notifications where the manager is: the web inbox, a Telegram DM with buttons,
e-mail or SMS, per user preference; and the staff's own actions from Telegram."""
