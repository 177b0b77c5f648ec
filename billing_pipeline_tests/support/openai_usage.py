"""OpenAI token prices per 1K for every meter of the usage API's completions result, at round
numbers so invoices can be added up by hand."""

from __future__ import annotations


def per_1k(charge_id: str, meter: str, price: str, **extra) -> dict:
    return {"id": charge_id, "meter": meter, "unit_size": 1000, "unit_price": price, **extra}


TOKEN_PLAN = [
    per_1k("text-in", "input_tokens", "0.50", dimensions={"service_tier": "default"}),
    per_1k("text-cached", "cached_input_tokens", "0.20"),
    per_1k("cache-write", "cache_write_tokens", "0.60"),
    per_1k("audio-in", "audio_input_tokens", "4.00"),
    per_1k("audio-cached", "cached_audio_input_tokens", "0.40"),
    per_1k("image-in", "image_input_tokens", "1.00"),
    per_1k("image-cached", "cached_image_input_tokens", "0.50"),
    per_1k("text-out", "output_tokens", "2.00"),
    per_1k("audio-out", "audio_output_tokens", "8.00"),
    per_1k("image-out", "image_output_tokens", "4.00"),
    {"id": "requests", "meter": "requests", "unit_price": "0.01"},
]
