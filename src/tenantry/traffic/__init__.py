"""Live traffic between a service's production clusters: routers (HAProxy, Route 53) behind
one interface, canary analysis, the canary controller and failover."""
