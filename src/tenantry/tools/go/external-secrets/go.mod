// Pins the External Secrets Operator's ExternalSecret CustomResourceDefinition (no binary
// is built): where a cluster runs the operator, Tenantry renders ExternalSecret objects
// for the tenants' secrets kept in AWS Secrets Manager, checked against this schema by a
// server-side dry run; the tests install it into a cluster that lacks it.
module tenantry.dev/tools/external-secrets

go 1.26.0

require github.com/external-secrets/external-secrets v0.16.2 // indirect
