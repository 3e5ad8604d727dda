"""Action ids, callback ids and block ids: one place, so builders and listeners agree."""

CONFIRM_ACTION = "pending_confirm"
CANCEL_ACTION = "pending_cancel"

BILL_APPROVE = "bill_approve"
BILL_REJECT = "bill_reject"
BILL_REJECT_MODAL = "bill_reject_modal"
REASON_BLOCK = "reason"
REASON_INPUT = "reason_input"

RECEIPT_CONFIRM = "receipt_confirm"
RECEIPT_CONFIRM_ANYWAY = "receipt_confirm_anyway"  # a likely duplicate, posted knowingly
RECEIPT_CHANGE = "receipt_change"
RECEIPT_DISCARD = "receipt_discard"
RECEIPT_CATEGORY_MODAL = "receipt_category_modal"
ACCOUNT_BLOCK = "account"
ACCOUNT_INPUT = "account_input"

ANOMALY_INVESTIGATE = "anomaly_investigate"
ANOMALY_DISMISS = "anomaly_dismiss"
