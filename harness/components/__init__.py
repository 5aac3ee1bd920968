"""Pipeline components: QR (data), LT/HCT/SIT/DG (text), ICL/CoT (prompt)."""
