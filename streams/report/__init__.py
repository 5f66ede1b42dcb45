"""What ShadowCanary publishes, for people: the HTML rollout report and the monitoring feed it reads."""
