"""An ordered actor: one account balance, updated in arrival order, that rejects overdrafts."""

import ringgen as rg
from ringgen.types import bool_, i32, i64


@rg.state
class Account:
    balance: i64 = 0
    transactions: i64 = 0


@rg.message
class Transaction:
    id: i64
    amount: i64  # positive deposits, negative withdraws


@rg.message
class Receipt:
    id: i64
    accepted: bool_
    balance: i64
    reason: i32  # 0 = ok, 1 = insufficient funds


@rg.ring_kernel(ordered=True)
def bank_account(tx: Transaction, acct: Account) -> Receipt:
    new_balance = acct.balance + tx.amount
    if new_balance < 0:
        return Receipt(id=tx.id, accepted=False, balance=acct.balance, reason=1)
    acct.balance = new_balance
    acct.transactions += 1
    return Receipt(id=tx.id, accepted=True, balance=new_balance, reason=0)
