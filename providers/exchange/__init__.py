"""The redemption platform (兑换系统) open API: direct VIP charges, batch charges, order query, callbacks."""
