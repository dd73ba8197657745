{
    "name": "WhatsApp Business for CRM",
    "summary": "Message contacts and leads through Meta's WhatsApp Business Cloud API",
    "version": "18.0.1.0.0",
    "category": "Sales/CRM",
    "license": "LGPL-3",
    "author": "WhatsApp Business Addon Team",
    "website": "https://github.com/whatsapp-business-odoo/whatsapp_business",
    "maintainers": [],
    "development_status": "Beta",
    "depends": ["mail", "crm", "phone_validation"],
    "external_dependencies": {
        "python": ["requests", "cryptography", "phonenumbers"],
    },
    "data": [],
    "installable": True,
    "application": False,
}
