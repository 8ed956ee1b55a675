// Log in: the token goes to this tab's sessionStorage, never into a page or a cookie.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("login-form");
  const error = document.getElementById("login-error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const response = await fetch("/api/auth/login", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({
          email: form.email.value.trim(),
          password: form.password.value,
        }),
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) {
        error.textContent = body.error || `Login failed (${response.status})`;
        return;
      }
      sessionStorage.setItem("hub.token", body.token);
      sessionStorage.setItem("hub.user", JSON.stringify(body.user));
      location.replace("/");
    } catch (exc) {
      error.textContent = "Could not reach the hub: " + exc.message;
    } finally {
      button.disabled = false;
    }
  });
});
