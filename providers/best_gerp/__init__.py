"""BEST GERP (千易ERP) distribution API: distributor recharge and refund records."""
