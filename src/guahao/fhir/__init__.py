"""The HL7 FHIR R4 scheduling facade at /fhir/R4 (issue 14): a face like the JSON API.

It reads through the features' public views and books through the same `do_*` actions
and hold flow as the API; it holds no rule of its own. docs/FHIR.md describes it."""
