"""The 17bst charge platform: e-coupon (card secret) purchases, card queries, products and balance."""
