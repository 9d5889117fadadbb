"""Orders with nested bridged structs: a customer (with a name) and a list of order lines.

``Order`` nests ``Customer`` (a bridged message: it holds a ``Str``) and a ``List[OrderLine, 16]``
whose elements are bridged too. The kernel prices each order: line totals, a discount for members
whose tier is "gold", and rejects lines with a zero quantity from the count.
"""

import ringgen as rg
from ringgen.types import List, Str, bool_, f64, i32, i64, u32


@rg.message
class Customer:
    id: i64
    name: Str[48]
    tier: Str[8]  # "gold", "silver", ...


@rg.message
class OrderLine:
    sku: Str[16]
    quantity: i32
    unit_price: f64


@rg.message
class Order:
    id: i64
    customer: Customer
    lines: List[OrderLine, 16]


@rg.message
class Invoice:
    order_id: i64
    customer_id: i64
    customer: Str[48]
    lines: u32  # lines with a positive quantity
    gift_cards: u32  # lines whose SKU starts with "GIFT-"
    subtotal: f64
    total: f64
    discounted: bool_


@rg.ring_kernel
def orders(o: Order) -> Invoice:
    subtotal = 0.0
    counted = u32(0)
    gifts = u32(0)
    for line in o.lines:
        if line.quantity > 0:
            subtotal += f64(line.quantity) * line.unit_price
            counted += u32(1)
        if line.sku.startswith("GIFT-"):
            gifts += u32(1)
    gold = o.customer.tier == "gold"
    total = subtotal
    if gold:
        total = subtotal * 0.9
    return Invoice(
        order_id=o.id,
        customer_id=o.customer.id,
        customer=o.customer.name,
        lines=counted,
        gift_cards=gifts,
        subtotal=subtotal,
        total=total,
        discounted=gold,
    )
