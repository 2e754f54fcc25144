"""Wangdiantong (旺店通) flagship ERP open API: supply-distribution recharge orders."""
