from . import test_module
from . import test_whatsapp_account
from . import test_controller_webhook
from . import test_whatsapp_message_queue
from . import test_webhook_fuzz
from . import test_whatsapp_template
