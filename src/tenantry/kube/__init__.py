"""The Kubernetes adapter (`client`, `waits`) and real local clusters
(`kwokconfig`, `localcluster`)."""
