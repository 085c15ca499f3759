"""The automation engine: when something happens to an invoice, a subscription or a
customer (a trigger), and it matches (conditions), do an ordered list of steps, with
waits. See docs/automations.md and DESIGN.md section 8."""
